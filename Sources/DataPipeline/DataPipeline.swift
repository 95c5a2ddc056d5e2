// The data layer: token shards, their manifest, the training data loader.

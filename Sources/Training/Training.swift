// The training layer: objectives, optimizer, schedules, the training loop.

import Runtime

/// Connected components of the duplicate graph across ranks, by min-label propagation with
/// hooking and pointer jumping (in the spirit of Shiloach–Vishkin): every document on an edge
/// ends labelled with the smallest ordinal of its component, which is the kept document.
///
/// Each vertex's label lives on one owner rank (a hash of the ordinal); edges stay on the rank
/// that found them. A round: (1) edge holders fetch their endpoints' labels from the owners;
/// (2) for each edge whose ends disagree, the smaller label m is proposed to both ends and to
/// both ends' labels (hooking the larger tree under the smaller); owners keep the minimum;
/// (3) owners replace each label by its label's label (pointer jumping). Rounds end when no
/// label changed anywhere. At that point every edge's ends share a label, and since labels only
/// ever take values of vertices in the same component and never exceed the vertex's own
/// ordinal, that label is the component's minimum — the same answer whatever the rank count.
/// Communication per round: three all-to-alls of ordinals and one all-reduce.
struct ComponentResolver {
    let world: Communicator

    func owner(_ vertex: UInt64) -> Int {
        Int(TextHashing.mix(vertex ^ 0x51DE_C0DE).multipliedFullWidth(by: UInt64(world.size)).high)
    }

    /// Labels of the vertices this rank owns (only vertices on some edge), and the rounds taken.
    func resolve(edges: [(UInt64, UInt64)]) throws -> (labels: [UInt64: UInt64], rounds: Int) {
        var labels = [UInt64: UInt64]()
        var rounds = 0
        let endpoints = Array(Set(edges.flatMap { [$0.0, $0.1] })).sorted()
        // Owners must know every vertex even before it is first proposed to.
        let introductions = try exchange(endpoints.map { ($0, $0) })
        for (vertex, _) in introductions where labels[vertex] == nil { labels[vertex] = vertex }
        while true {
            rounds += 1
            let known = try fetchLabels(endpoints, labels: labels)
            var proposals = [(UInt64, UInt64)]()
            for (first, second) in edges {
                guard let firstLabel = known[first], let secondLabel = known[second], firstLabel != secondLabel else { continue }
                let smallest = min(firstLabel, secondLabel)
                for target in [first, second, firstLabel, secondLabel] where target != smallest {
                    proposals.append((target, smallest))
                }
            }
            var changes = 0
            for (target, value) in try exchange(proposals) {
                let current = labels[target] ?? target
                if value < current {
                    labels[target] = value
                    changes += 1
                }
            }
            // Pointer jumping: label ← label's label.
            let pointed = labels.filter { $0.key != $0.value }.keys.sorted()
            let parents = try fetchLabels(pointed.compactMap { labels[$0] }, labels: labels)
            for vertex in pointed {
                if let parent = labels[vertex], let grandparent = parents[parent], grandparent < parent {
                    labels[vertex] = grandparent
                    changes += 1
                }
            }
            if try world.allreduce(Int64(changes), .sum) == 0 { break }
        }
        return (labels, rounds)
    }

    /// Sends each `(target, value)` pair to the owner of `target`; returns the pairs received.
    func exchange(_ pairs: [(UInt64, UInt64)]) throws -> [(UInt64, UInt64)] {
        var outgoing = [[UInt64]](repeating: [], count: world.size)
        for (target, value) in pairs { outgoing[owner(target)] += [target, value] }
        let incoming = try world.alltoall(outgoing)
        var received = [(UInt64, UInt64)]()
        for block in incoming {
            for index in stride(from: 0, to: block.count, by: 2) { received.append((block[index], block[index + 1])) }
        }
        return received
    }

    /// The current labels of `vertices` (asked of their owners).
    private func fetchLabels(_ vertices: [UInt64], labels: [UInt64: UInt64]) throws -> [UInt64: UInt64] {
        var requests = [[UInt64]](repeating: [], count: world.size)
        for vertex in Set(vertices) { requests[owner(vertex)].append(vertex) }
        let asked = try world.alltoall(requests)
        let answers = asked.map { block in block.map { labels[$0] ?? $0 } }
        let replies = try world.alltoall(answers)
        var known = [UInt64: UInt64]()
        for rank in 0..<world.size {
            for (vertex, label) in zip(requests[rank], replies[rank]) { known[vertex] = label }
        }
        return known
    }
}

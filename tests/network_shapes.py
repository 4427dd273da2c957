"""What two networks must share to be the same search problem: chaining, each layer's (m, n, k) in
order, and which layers are tied (by position; group names are free)."""


def structure(net):
    index = {name: i for i, name in enumerate(net.layer_names)}
    ties = sorted(tuple(index[m] for m in members) for _, members in net.groups)
    return net.chained, [(l.m, l.n, l.k) for l in net.layers], ties


def tied_names(net):
    return sorted(tuple(members) for _, members in net.groups)

"""Plug-in objectives used by the CLI tests (imported by path, as a user's would be)."""


def constant_one(config, network):
    return 1.0


def fails_on_int8_first_layer(config, network):
    if config[network.layers[0].name] == "int8":
        raise RuntimeError("no int8 here")
    return float(len(network.layers))


def returns_nan(config, network):
    return float("nan")


def returns_inf(config, network):
    return float("inf")


def returns_string(config, network):
    return "good"

"""Extra networks that change the model: LoRA / LyCORIS files and hypernetworks (networks.md).

`initialize()` lists the folders and registers the `lora` (alias `lyco`) and `hypernet` tag
handlers with modules.extra_networks; the handlers patch weights for a batch and restore them.
"""
from modules.networks.lora import (  # noqa: F401 (A1111 names extensions use)
    ActivationReport,
    LoadedNetwork,
    SdVersion,
    list_available_networks,
    load_networks,
    loaded_networks,
    registry,
    restore_all,
)
from modules.networks.network_file import NetworkData, NetworkLoadError, load_network_file  # noqa: F401


def initialize() -> None:
    from modules import extra_networks
    from modules.networks import extra_network_lora, hypernetworks
    list_available_networks()
    hypernetworks.list_hypernetworks()
    handler = extra_network_lora.ExtraNetworkLora()
    extra_networks.register_extra_network(handler)
    extra_networks.register_extra_network_alias(handler, "lyco")
    extra_networks.register_extra_network(hypernetworks.ExtraNetworkHypernet())

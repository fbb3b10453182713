"""Config: records what Metaflow's configuration and the environment look like in a task."""

import os
import tempfile

from metaflow import FlowSpec, step


class ConfigFlow(FlowSpec):
    @step
    def start(self):
        from metaflow import metaflow_config as config
        from metaflow.client import filecache
        from metaflow.plugins.cards import card_datastore
        from metaflow.plugins.datastores.local_storage import LocalStorage
        from metaflow.plugins.datastores.spin_storage import SpinStorage
        from metaflow.util import get_username

        self.config = {
            "DATASTORE_SYSROOT_LOCAL": config.DATASTORE_SYSROOT_LOCAL,
            "DATASTORE_SYSROOT_SPIN": config.DATASTORE_SYSROOT_SPIN,
            "DATATOOLS_LOCALROOT": config.DATATOOLS_LOCALROOT,
            "CARD_LOCALROOT": config.CARD_LOCALROOT,
            "CLIENT_CACHE_PATH": config.CLIENT_CACHE_PATH,
            "CLIENT_CACHE_MAX_SIZE": config.CLIENT_CACHE_MAX_SIZE,
            "USER": config.USER,
            "LocalStorage.SYSROOT_VAR": LocalStorage.SYSROOT_VAR,
            "SpinStorage.SYSROOT_VAR": SpinStorage.SYSROOT_VAR,
            "card_datastore.CARD_LOCALROOT": card_datastore.CARD_LOCALROOT,
            "filecache.CLIENT_CACHE_PATH": filecache.CLIENT_CACHE_PATH,
        }
        self.username = get_username()
        self.home = os.path.expanduser("~")
        self.tempdir = tempfile.gettempdir()
        self.cwd = os.getcwd()
        self.env = {k: v for k, v in os.environ.items() if k.startswith("METAFLOW_")}
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ConfigFlow()

"""Config: a flow configuration read from a file beside this flow, used in a
step and in a decorator (through ``config_expr``)."""

from metaflow import Config, FlowSpec, config_expr, environment, step


class UserConfigFlow(FlowSpec):
    settings = Config("settings", default="data/settings.json", help="model settings")

    @step
    def start(self):
        self.depth = self.settings.model.depth
        self.name_in_config = self.settings["model"]["name"]
        self.next(self.end)

    @environment(vars={"MODEL_NAME": config_expr("settings.model.name")})
    @step
    def end(self):
        import os

        self.env_name = os.environ["MODEL_NAME"]
        self.all_settings = dict(self.settings)


if __name__ == "__main__":
    UserConfigFlow()

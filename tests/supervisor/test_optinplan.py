"""The opt-in controller's decisions (:mod:`mcosup.supervisor.optinplan`): tables, no cluster."""

from __future__ import annotations

from test_optin_rule import BUILD_CONFIG, NS, SECRETS, mosc, pool

from mcosup.model import names
from mcosup.supervisor import optinplan


def test_settings_problems_per_pool() -> None:
    moscs = [mosc("master", push="missing")]
    cms = {names.BUILD_CONFIG_CM: BUILD_CONFIG}
    found = optinplan.settings_problems([pool(label=True), pool("master")], moscs, cms.get, SECRETS.get, NS)
    assert found["worker"] == []
    assert len(found["master"]) == 1
    assert found["master"][0].startswith(
        'MachineOSConfig master spec.renderedImagePushSecret.name: Secret "missing" does not exist'
    )

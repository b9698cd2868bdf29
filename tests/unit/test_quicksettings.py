"""The checkpoint selector's handlers keep the 'where to put a checkpoint' notice while none exists."""
from modules import sd_models
from modules.ui import quicksettings


def test_empty_selection_keeps_the_notice_when_there_is_no_checkpoint(webui_session, monkeypatch):
    # page load turns an empty dropdown value into None, which fires the change handler
    monkeypatch.setattr(sd_models, "checkpoint_titles", lambda: [])
    _, notice = quicksettings.switch_checkpoint(None)
    assert "models" in notice and "Stable-diffusion" in notice and notice.startswith("No checkpoint is loaded")
    _, notice = quicksettings.refresh()
    assert notice.startswith("No checkpoint is loaded")


def test_empty_selection_says_nothing_when_checkpoints_exist(webui_session):
    _, notice = quicksettings.switch_checkpoint(None)
    assert notice == ""

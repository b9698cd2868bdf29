import launch

launch.run_pip("install transformers<5", "pip-pin-conflict")

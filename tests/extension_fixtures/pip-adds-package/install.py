import os

import launch

wheels, target = os.environ["TINY_WHEELS_DIR"], os.environ["TINY_TARGET_DIR"]
launch.run_pip(f"install --no-index --find-links {wheels} --target {target} tiny-ext-pkg", "pip-adds-package")
with open(os.environ["TINY_RUNS_LOG"], "a") as log:
    log.write("pip-adds-package\n")

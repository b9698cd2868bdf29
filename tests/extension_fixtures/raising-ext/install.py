raise SystemExit("raising-ext: install.py fails on purpose")

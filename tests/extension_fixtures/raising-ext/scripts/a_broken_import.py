raise ImportError("raising-ext: this script is broken on purpose")

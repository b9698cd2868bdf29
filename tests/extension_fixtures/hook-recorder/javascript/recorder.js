window.hookRecorderLoaded = true;

"""The Extras pipeline: built-in postprocessing steps (on the ScriptPostprocessing API), the runner,
and the infotext of the results."""

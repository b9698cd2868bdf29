"""Training: datasets, prompt templates, learning-rate schedules and the embedding / LoRA trainers.

Every trainer runs as a job on shared.job_queue (callers submit it); see jobs.py for the glue that
reports step, loss and ETA through shared.state.
"""

"""lobwife's cron jobs, run inside `lobstore serve`: the jobs file (:mod:`.definitions`), cron
expressions (:mod:`.schedule`), one run as a child process (:mod:`.process`) and the scheduler
(:mod:`.scheduler`). Needs the ``jobs`` extra (croniter): ``pip install 'lobstore[jobs]'``."""

from .definitions import JobDefinition, JobsFile, load_jobs, parse_jobs
from .schedule import CronSchedule
from .scheduler import JobScheduler

__all__ = ["CronSchedule", "JobDefinition", "JobScheduler", "JobsFile", "load_jobs", "parse_jobs"]

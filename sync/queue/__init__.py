"""Sync jobs on a PostgreSQL job queue (procrastinate), for workers on as many machines as
needed: one job is one app's sync over a range of billing dates.

    specs      what a job is, its lock (the app) and queueing lock (app, kind, dates) (pure)
    connect    the procrastinate app of a database; queue and task names
    enqueue    deferring jobs, an identical queued one refusing the new one
    worker     `taskbox-sync worker`: procrastinate's worker running jobs with the engine
    runner     a worker's runs: one SyncRun per job over shared parts
    retry      what becomes of a failed job: its error and its retry (pure)
    schedule   the nightly cron in China time: a tick deferred once however many workers
    stalled    jobs of dead workers put back in the queue
    notes      the worker and last error of each job (for status)
    status     what the queue holds, per app (read-only)
"""

from sync.queue.connect import queue_app
from sync.queue.enqueue import Deferral, enqueue
from sync.queue.specs import JobSpec
from sync.queue.status import QueueReport, queue_status
from sync.queue.worker import WorkerConfig, serve

__all__ = [
    "Deferral",
    "JobSpec",
    "QueueReport",
    "WorkerConfig",
    "enqueue",
    "queue_app",
    "queue_status",
    "serve",
]

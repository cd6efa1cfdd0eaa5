"""Every Redis key name taskd uses, made here and nowhere else.

All keys of one queue share the hash tag ``{<queue>}`` so that each Lua script touches a
single Redis Cluster slot, and different queues spread over the shards.

==============================  ======  ==================================================
key                             type    holds
==============================  ======  ==================================================
taskd:{q}:task:<id>             hash    the task's fields (see taskd.model.Task)
taskd:{q}:stream:<p>            stream  ready tasks of priority p (1-10); group ``taskd``
taskd:{q}:delayed               zset    scheduled and retrying task ids, score = due ms
taskd:{q}:depth                 hash    priority -> entries waiting undelivered in its stream
taskd:{q}:front                 zset    handed-back task ids, taken before their level's
                                        stream; score = (10 - priority) * 1e13 + ms
taskd:{q}:paused                string  present while the queue is paused (not fetched)
taskd:{q}:ratelimit             hash    rate-limit scope -> theoretical arrival time ms
taskd:{q}:schedule:<name>       string  last occurrence (ms) a schedule reached (run or first seen)
taskd:{q}:index                 zset    every task id, score = created ms * 1000 + n
taskd:{q}:seq                   string  last index score given (orders one ms's tasks)
taskd:{q}:finished              zset    finished task ids, score = finish ms (retention)
taskd:{q}:dead                  zset    failed task ids (dead letters), score = fail ms
taskd:{q}:stats                 hash    count per status, ``total``, monotonic counters
taskd:{q}:events                stream  one entry per transition / progress (capped)
taskd:{q}:history               hash    '<minute>:<task type>' -> packed per-minute counts
taskd:{q}:history:index         zset    history field -> its minute (drops old fields)
taskd:{q}:unique:<key>          string  id of the task submitted with this unique key
taskd:{q}:outbox                stream  workflow ends bound for a child in another queue
                                        (drained by the supervisor, see scripts/_flow.lua)
taskd:workflow:<id>             hash    a workflow: name, created_at, its tasks (JSON)
taskd:workflows                 zset    workflow ids, score = created ms
taskd:workflows:writing         zset    ids of workflows still being submitted (ms)
taskd:queues                    set     names of queues that ever had a task
taskd:workers                   zset    consumer name -> last heartbeat ms
taskd:worker:<consumer>         string  JSON info of a live consumer (expires)
taskd:cancel                    pubsub  ids of processing tasks asked to cancel
==============================  ======  ==================================================
"""

from __future__ import annotations

from taskd.model import MAX_PRIORITY, MIN_PRIORITY

GROUP = "taskd"
QUEUES = "taskd:queues"
WORKERS = "taskd:workers"
CANCEL_CHANNEL = "taskd:cancel"
WORKFLOWS = "taskd:workflows"
#: Workflows whose submit has not released its roots yet (see taskd.store.flowrepair).
WORKFLOWS_WRITING = "taskd:workflows:writing"
#: The group consumer that holds handed-back entries (reclaimed, released, or delivered
#: beyond a fetch's room) until a fetch takes them from the front zset.
HANDBACK = "taskd:front"
PRIORITIES = tuple(range(MIN_PRIORITY, MAX_PRIORITY + 1))


def workflow(workflow_id: str) -> str:
    """Key of a workflow's record (its own slot: its tasks may live in many queues)."""
    return f"taskd:workflow:{workflow_id}"


def worker_info(consumer: str) -> str:
    """Key of a consumer's heartbeat record."""
    return f"taskd:worker:{consumer}"


class Keys:
    """Key names of one queue."""

    __slots__ = (
        "dead",
        "delayed",
        "depth",
        "events",
        "finished",
        "front",
        "history",
        "history_index",
        "index",
        "outbox",
        "paused",
        "queue",
        "ratelimit",
        "seq",
        "stats",
        "streams",
        "tag",
        "task_prefix",
        "unique_prefix",
    )

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.tag = f"taskd:{{{queue}}}"
        self.task_prefix = f"{self.tag}:task:"
        self.unique_prefix = f"{self.tag}:unique:"
        self.delayed = f"{self.tag}:delayed"
        self.depth = f"{self.tag}:depth"
        self.front = f"{self.tag}:front"
        self.paused = f"{self.tag}:paused"
        self.ratelimit = f"{self.tag}:ratelimit"
        self.index = f"{self.tag}:index"
        self.seq = f"{self.tag}:seq"
        self.finished = f"{self.tag}:finished"
        self.dead = f"{self.tag}:dead"
        self.stats = f"{self.tag}:stats"
        self.events = f"{self.tag}:events"
        self.outbox = f"{self.tag}:outbox"
        self.history = f"{self.tag}:history"
        self.history_index = f"{self.tag}:history:index"
        self.streams: dict[int, str] = {p: f"{self.tag}:stream:{p}" for p in PRIORITIES}

    def task(self, task_id: str) -> str:
        """The hash of one task."""
        return self.task_prefix + task_id

    def unique(self, unique_key: str) -> str:
        """The pointer from a unique key to its task id."""
        return self.unique_prefix + unique_key

    def schedule(self, name: str) -> str:
        """The last occurrence a periodic schedule enqueued into this queue."""
        return f"{self.tag}:schedule:{name}"

    def stream(self, priority: int) -> str:
        """The ready stream of one priority level."""
        return self.streams[priority]

    @property
    def streams_by_urgency(self) -> list[str]:
        """Streams from priority 10 down to 1: the order fetch reads them in."""
        return [self.streams[p] for p in reversed(PRIORITIES)]

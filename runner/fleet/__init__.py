"""Fleet mode: jobs on a real broker (RabbitMQ through Celery/kombu), shared by many workers.

``queues``: the broker topology (one durable priority queue per resolution pool, a
dead-letter exchange) and the Celery app that uses it; ``dlq``: inspect and re-drive dead
jobs. The job store (``runner.store``) holds the jobs' state; the broker only says which
job to work on next.
"""

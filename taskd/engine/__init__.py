"""The worker side: pool, fetcher, supervisor, scheduler, registry, context, event relay."""

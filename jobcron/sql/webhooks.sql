-- Webhook subscriptions and the outbox entries the daemon itself writes (migration 0010).

-- name: webhooks_listed
-- The subscriptions as the database holds them.
SELECT name, events, job_types, max_retries FROM jobcron_webhooks ORDER BY name;

-- name: webhooks_drop_others
-- Remove the subscriptions that are not in this daemon's config.
DELETE FROM jobcron_webhooks WHERE NOT (name = ANY (%(names)s::text[]));

-- name: webhooks_upsert
-- One subscription from this daemon's config.
INSERT INTO jobcron_webhooks (name, events, job_types, max_retries)
VALUES (%(name)s, %(events)s::text[], %(job_types)s::text[], %(max_retries)s)
ON CONFLICT (name) DO UPDATE
SET events = EXCLUDED.events, job_types = EXCLUDED.job_types, max_retries = EXCLUDED.max_retries,
    updated_at = now()
WHERE (jobcron_webhooks.events, jobcron_webhooks.job_types, jobcron_webhooks.max_retries)
      IS DISTINCT FROM (EXCLUDED.events, EXCLUDED.job_types, EXCLUDED.max_retries);

-- name: webhooks_schedule_failed
-- The outbox entries of a schedule whose occurrence failed to enqueue or whose definition is invalid; in the firing's transaction.
SELECT jobcron_webhook_outbox(
    'schedule.failed', %(job_type)s::text,
    jsonb_build_object('job', NULL,
                       'schedule', jsonb_build_object('id', %(schedule_id)s::bigint, 'name', %(name)s::text,
                                                      'error', %(error)s::text,
                                                      'occurrence', %(occurrence)s::timestamptz))) AS made;

-- The planner takes due follow-ups before due first steps (a thread already started should not
-- starve behind new leads). With this index it finds them without reading every due first step,
-- so a tick costs the same with 100 or 100,000 leads waiting for their first message.
CREATE INDEX enrollments_due_follow_ups ON enrollments (campaign_id, next_due_at)
    WHERE status = 'active' AND next_step > 0;

"""Front-end delivery columns leave ``jobs``: kept aside in ``jobs_retired_columns`` for the front end.

The bot now keeps where and how it answers a job in its own table. Its migration imports these rows
(then drops this table); a front end that never opens the database leaves them untouched.
"""

SQL = """
CREATE TABLE jobs_retired_columns AS
    SELECT id AS job_id, channel_id, interaction_id, interaction_token, message_id,
           claimed_at, delivered_at, created_at
    FROM jobs
    WHERE channel_id IS NOT NULL OR interaction_id IS NOT NULL OR message_id IS NOT NULL;
DROP INDEX IF EXISTS jobs_message;
ALTER TABLE jobs DROP COLUMN channel_id;
ALTER TABLE jobs DROP COLUMN interaction_id;
ALTER TABLE jobs DROP COLUMN interaction_token;
ALTER TABLE jobs DROP COLUMN message_id;
ALTER TABLE jobs DROP COLUMN claimed_at;
ALTER TABLE jobs DROP COLUMN delivered_at;
"""

-- The IAM role a state machine was created with (Step Functions' roleArn), reported back as given and to its
-- executions' context object; stoke has no IAM, so nothing else reads it.
ALTER TABLE workflows ADD COLUMN role_arn TEXT;

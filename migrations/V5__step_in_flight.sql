-- The creation step whose remote call may be in flight: written just before a step's remote
-- call, cleared when the step is journaled. A crash in between leaves it set, so whoever
-- resumes or tears the creation down knows to look the resource up by name first (a project
-- whose `projectCreate` applied but whose answer was lost must never outlive its row).
ALTER TABLE agent_metadata ADD COLUMN step_in_flight TEXT;

-- A counter of configuration changes. Every change to sources or consumers
-- (config apply, the management API) increments it in its own transaction;
-- after commit the caller writes the new value into each source's WAL as a
-- logical message ('sluice_config'), and capture, on reading that message,
-- waits until its consumer registry has loaded at least that version. So every
-- change made on a source after a config call returned is routed by the
-- config that call wrote, even when another process (a second gateway, the
-- CLI) made the change and the NOTIFY has not arrived yet.
CREATE TABLE sluice.config_version (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  version   bigint NOT NULL
);
INSERT INTO sluice.config_version (version) VALUES (0);

-- Webhook signing secrets sealed at rest: `secret` holds the keyring's ciphertext
-- (bound to the endpoint's id) when `secret_key_id` names the key that sealed it; rows
-- written before this migration keep their plaintext `secret` and a NULL key id.
ALTER TABLE webhook_endpoints ADD COLUMN secret_key_id TEXT;

DROP TABLE user_azure_identities;
DROP TABLE tenant_sso_configs;

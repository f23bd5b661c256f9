DROP TABLE user_tenant_associations;
DROP TABLE tenants;

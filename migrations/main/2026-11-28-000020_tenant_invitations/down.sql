DROP TABLE tenant_invitations;

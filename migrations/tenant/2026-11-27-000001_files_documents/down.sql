DROP TABLE documents;
DROP TABLE files;

"""The SQLite schema 2 as thingcore created it before messages were stored once (issue 12): what the upgrade
tests build an old data directory from. Records then held the whole message with the delivery state inside."""

SCHEMA_2 = """
CREATE TABLE retained (topic TEXT PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE sessions (client_id TEXT PRIMARY KEY, meta BLOB NOT NULL);
CREATE TABLE session_messages (
    client_id TEXT NOT NULL, seq INTEGER NOT NULL, record BLOB NOT NULL, PRIMARY KEY (client_id, seq)
) WITHOUT ROWID;
CREATE TABLE inbound_qos2 (
    client_id TEXT NOT NULL, packet_id INTEGER NOT NULL, PRIMARY KEY (client_id, packet_id)
) WITHOUT ROWID;
CREATE TABLE documents (namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (namespace, key));
PRAGMA user_version = 2;
"""

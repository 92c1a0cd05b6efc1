"""Authentication and authorization hooks: identities, the password file, access rules."""

from thingcore.auth.acl import (
    Rule,
    allow_all,
    build_authorizer,
    filter_covers,
    is_trivial,
    parse_rules,
    topic_matches,
)
from thingcore.auth.identity import Action, Authenticator, Authorizer, AuthResult, Identity, service_identity
from thingcore.auth.passwords import PasswordFile, PasswordFileError
from thingcore.auth.policy import build_authenticator, is_loopback, login_name

__all__ = [
    "Action",
    "AuthResult",
    "Authenticator",
    "Authorizer",
    "Identity",
    "PasswordFile",
    "PasswordFileError",
    "Rule",
    "allow_all",
    "build_authenticator",
    "build_authorizer",
    "filter_covers",
    "is_loopback",
    "is_trivial",
    "login_name",
    "parse_rules",
    "service_identity",
    "topic_matches",
]

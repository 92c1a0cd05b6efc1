"""Functions that reach a service: aws_lambda, get_thing_shadow, get_dynamodb, get_secret,
get_registry_data. They run against thingcore's local counterparts through ``ctx.services``; a
missing service or a failing call fails the rule (SqlRuntimeError), as AWS fails the rule."""

from __future__ import annotations

import base64
from typing import Any

from ..errors import SqlRuntimeError
from ..values import UNDEFINED, loads, normalize_v2
from .registry import V2016, sqlfunc

# AWS functions with no local counterpart: rule creation refuses them.
UNSUPPORTED_FUNCTIONS = frozenset({"machinelearning_predict"})
UNSUPPORTED_REASONS = {
    "machinelearning_predict": "machinelearning_predict() calls Amazon Machine Learning, which has no local "
                               "counterpart in thingcore",
}


def _service(env: Any, method: str, function: str) -> Any:
    call = getattr(env.ctx.services, method, None)
    if call is None:
        raise SqlRuntimeError(f"{function}() is not available: no local service provides {method}()")
    return call


def _invoke(function: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except SqlRuntimeError:
        raise
    except Exception as e:  # a failing service fails the rule, like an AWS call error
        raise SqlRuntimeError(f"{function}() failed: {e}") from e


def _strings(function: str, **args: Any) -> None:
    for name, v in args.items():
        if type(v) is not str:
            raise SqlRuntimeError(f"{function}(): {name} must be a string")


def _result(env: Any, v: Any) -> Any:
    if v is None:
        return UNDEFINED
    return normalize_v2(v) if env.v2 else v


@sqlfunc("aws_lambda", 2, env=True, external=True)
def sql_aws_lambda(env: Any, function_arn: Any, payload: Any) -> Any:
    _strings("aws_lambda", functionArn=function_arn)
    call = _service(env, "call_function", "aws_lambda")
    if type(payload) is bytes:
        raise SqlRuntimeError("aws_lambda(): the input must be JSON; use encode(*, 'base64') for binary payloads")
    if payload is UNDEFINED:
        payload = None
    result = _invoke("aws_lambda", call, function_arn, payload)
    if isinstance(result, (bytes, bytearray, str)):
        try:
            result = loads(result)
        except ValueError as e:
            raise SqlRuntimeError("aws_lambda(): the function did not return JSON") from e
    return _result(env, result)


@sqlfunc("get_thing_shadow", 2, 3, since=V2016, env=True, external=True)
def sql_get_thing_shadow(env: Any, thing_name: Any, *rest: Any) -> Any:
    """``get_thing_shadow(thingName, [shadowName,] roleArn)``; a missing shadow is Undefined."""
    shadow_name = rest[0] if len(rest) == 2 else None
    role_arn = rest[-1]
    _strings("get_thing_shadow", thingName=thing_name, roleArn=role_arn)
    if shadow_name is not None:
        _strings("get_thing_shadow", shadowName=shadow_name)
    call = _service(env, "get_thing_shadow", "get_thing_shadow")
    return _result(env, _invoke("get_thing_shadow", call, thing_name, role_arn, shadow_name))


@sqlfunc("get_dynamodb", 4, 6, since=V2016, env=True, external=True)
def sql_get_dynamodb(env: Any, table: Any, key_name: Any, key_value: Any, *rest: Any) -> Any:
    """``get_dynamodb(table, pkName, pkValue, [skName, skValue,] roleArn)``; at most one call per
    statement evaluation (AWS aborts the rule on a second one)."""
    if len(rest) not in (1, 3):
        return UNDEFINED
    env.calls[0] += 1
    if env.calls[0] > 1:
        raise SqlRuntimeError("get_dynamodb() may be called at most once per SQL statement")
    role_arn = rest[-1]
    range_name = rest[0] if len(rest) == 3 else None
    range_value = rest[1] if len(rest) == 3 else None
    _strings("get_dynamodb", tableName=table, partitionKeyName=key_name, roleArn=role_arn)
    call = _service(env, "get_dynamodb", "get_dynamodb")
    item = _invoke("get_dynamodb", call, table, key_name, key_value, range_name, range_value, role_arn)
    return _result(env, item)


@sqlfunc("get_secret", 3, 4, env=True, external=True)
def sql_get_secret(env: Any, secret_id: Any, secret_type: Any, *rest: Any) -> Any:
    """``get_secret(secretId, secretType, [key,] roleArn)``: SecretString gives the JSON object,
    the value of ``key`` in it, or the plain string; SecretBinary gives base64."""
    key = rest[0] if len(rest) == 2 else None
    role_arn = rest[-1]
    _strings("get_secret", secretId=secret_id, secretType=secret_type, roleArn=role_arn)
    if secret_type not in ("SecretString", "SecretBinary"):
        raise SqlRuntimeError("get_secret(): secretType must be SecretString or SecretBinary")
    if key is not None and type(key) is not str:
        raise SqlRuntimeError("get_secret(): key must be a string")
    call = _service(env, "get_secret", "get_secret")
    value = _invoke("get_secret", call, secret_id, secret_type, key, role_arn)
    if secret_type == "SecretBinary":
        if key is not None:
            raise SqlRuntimeError("get_secret(): a key cannot be used with SecretBinary")
        if isinstance(value, str):
            value = value.encode("utf-8")
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    try:
        doc = loads(value)
    except (ValueError, TypeError):
        doc = UNDEFINED
    if key is None:
        return doc if type(doc) is dict else value
    if type(doc) is not dict:
        raise SqlRuntimeError(f"get_secret(): secret {secret_id!r} is not a JSON object, so key {key!r} "
                              "cannot be read")
    if key not in doc:
        raise SqlRuntimeError(f"get_secret(): secret {secret_id!r} has no key {key!r}")
    return _result(env, doc[key])


@sqlfunc("get_registry_data", 3, env=True, external=True)
def sql_get_registry_data(env: Any, api: Any, thing_name: Any, role_arn: Any) -> Any:
    """``get_registry_data('DescribeThing' | 'ListThingGroupsForThing', thingName, roleArn)``."""
    _strings("get_registry_data", registryAPI=api, thingName=thing_name, roleArn=role_arn)
    if api not in ("DescribeThing", "ListThingGroupsForThing"):
        raise SqlRuntimeError("get_registry_data(): registryAPI must be DescribeThing or ListThingGroupsForThing")
    call = _service(env, "get_registry_data", "get_registry_data")
    return _result(env, _invoke("get_registry_data", call, api, thing_name, role_arn))


@sqlfunc("machinelearning_predict", 3, env=True, external=True)
def sql_machinelearning_predict(env: Any, *args: Any) -> Any:  # pragma: no cover - refused at compile time
    raise SqlRuntimeError(UNSUPPORTED_REASONS["machinelearning_predict"])

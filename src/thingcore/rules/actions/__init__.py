"""Rule actions, one module per AWS action kind; :data:`ACTIONS` maps the AWS member name to its class.

A rule naming an AWS action that is not here yet is refused at creation with a message naming it.
"""

from __future__ import annotations

from thingcore.rules.actions.base import Action, ActionConfigError, ActionEnv, ActionError, ActionRunner, Firing
from thingcore.rules.actions.dynamodb import DynamoDBAction, DynamoDBv2Action
from thingcore.rules.actions.http import HttpAction
from thingcore.rules.actions.lambda_ import LambdaAction
from thingcore.rules.actions.outputs import OUTPUT_ACTIONS
from thingcore.rules.actions.republish import RepublishAction
from thingcore.rules.actions.sqs import SqsAction
from thingcore.rules.actions.streams import FirehoseAction, KinesisAction

ACTIONS: dict[str, type[Action]] = {cls.kind: cls for cls in (RepublishAction, HttpAction, LambdaAction)}
ACTIONS.update({cls.kind: cls for cls in (DynamoDBAction, DynamoDBv2Action, KinesisAction, FirehoseAction, SqsAction)})
ACTIONS.update(OUTPUT_ACTIONS)

__all__ = ["ACTIONS", "Action", "ActionConfigError", "ActionEnv", "ActionError", "ActionRunner", "Firing"]

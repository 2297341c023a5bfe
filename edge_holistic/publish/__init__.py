"""Where messages go: the Sink interface, the MQTT session and its command protocol."""
from .commands import CMD_MAX_BYTES, COMMANDS, SET_KEYS, Command, CommandError, parse_command
from .sink import JsonLinesSink, Sink

__all__ = [
    "CMD_MAX_BYTES", "COMMANDS", "Command", "CommandError", "JsonLinesSink", "SET_KEYS", "Sink", "parse_command",
]
# MqttSession is imported from .mqtt directly: it pulls in paho, which check-config does not need.

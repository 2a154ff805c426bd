"""The one error every command raises for options that do not fit."""


class UsageError(Exception):
    pass

from typing import TypeVar

_T = TypeVar("_T")

def untrack(obj: _T) -> _T: ...

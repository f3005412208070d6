"""One-time migrations from today's world into the store: the vault's task files
(:mod:`.vault`) and lobwife's JSON state files (:mod:`.json_state`). Both are idempotent and
never change their source. Their reports share :mod:`.report` (one JSON form, one text form)."""

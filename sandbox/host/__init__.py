"""Ground floor: small host codecs several floors share (ids, Xauthority, udev records, dirs).

Imports nothing of sandbox above `errors` and `fileutil`; `names` is pure (the policy core uses it).
"""

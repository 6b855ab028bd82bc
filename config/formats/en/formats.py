"""The console's one date format (``config.display.DATETIME_FORMAT``) for Django's own rendering.

``FORMAT_MODULE_PATH`` puts this module before Django's English formats, so detail pages, read-only
fields and history pages show ``2026-12-04 15:20 UTC`` like the lists. Input formats are Django's.
"""

DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"

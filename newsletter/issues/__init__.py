"""An issue from draft to sent: its lifecycle, schedules, what goes in it, and rendering it.

Editors and schedules act here; the delivery package carries out the sends.
"""

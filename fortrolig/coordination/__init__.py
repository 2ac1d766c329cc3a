"""Coordination between nodes: one interface, two implementations chosen at start-up.

:mod:`.base` holds the interface (:class:`~.base.Coordination`) and its records; :mod:`.local`
keeps everything in this process (one node, the embedded default); :mod:`.redis_store` shares it
through Redis (the only module that imports redis). What is coordinated: the node registry
(entries expire by themselves when a node stops heartbeating) and room ownership as leases
with a fencing counter. Durable records (rooms, consultations, who was admitted) are in the
records database, not here: Redis may lose everything and the cluster still recovers.
"""

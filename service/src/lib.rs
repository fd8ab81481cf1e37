//! A reference processing service: the seed's cycle (*check triggers*,
//! *check outgoing*) over a messages table, woken by Flagpost.

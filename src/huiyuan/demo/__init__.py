"""The demo: a believable platform with three stores, members and a year of activity."""

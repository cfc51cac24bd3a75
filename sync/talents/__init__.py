"""Exclusive-task creators (`update_orient_talents`): the pure rules of the roster commands."""

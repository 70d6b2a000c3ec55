"""What a notebook imports: the iAvicenne client, room widgets and peer links."""

"""What people read: the verdict (Markdown from templates/), plots, console tables, the ticket."""

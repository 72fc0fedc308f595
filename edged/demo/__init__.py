"""`edged demo`: a simulated shuttle, an embedded broker and a dispatch-side live view."""

// Placeholder: the WebSocket codec lands here.

import CLiburing

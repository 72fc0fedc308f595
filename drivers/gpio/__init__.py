"""GPIO of the node through gpiozero: door contacts, counting beams, panic button, ignition
sense in; lock relay, LEDs and buzzer out (`gpio.gpiozero`, drivers.gpio.board).

beams.py is the pure direction machine for the counting beams, outputs.py the relay pulse
and indicator patterns on loop timers, mockwire.py the control socket a test rig uses to
drive the mock pins of a running daemon, pins.py the pin names checked at config time.
"""

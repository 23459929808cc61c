# frozen_string_literal: true

# The Tipi-native app of `bench/idle.rb ws`: WebSockets that echo, served by callbacks (parked
# while idle) at /callbacks or by a fiber each waiting in recv at /fiber; "Hello" otherwise.
lambda do |req|
  case req.path
  when '/callbacks'
    req.upgrade_to_websocket { |ws| ws.on_message { |message| ws << message } }
  when '/fiber'
    req.upgrade_to_websocket { |ws| ws.recv_loop { |message| ws << message } }
  else
    req.respond('Hello', 'Content-Type' => 'text/plain')
  end
end

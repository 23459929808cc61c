# The hello-world Rack app of bench/http.sh.
run ->(env) { [200, { 'Content-Type' => 'text/plain', 'Content-Length' => '5' }, ['Hello']] }

# frozen_string_literal: true

# The native extension (Rust): under a per-Ruby-version directory when installed as a gem
# built for several Rubies, else beside this file (a local build or `gem install`). Loading it
# defines H1P only, and starts nothing; lib/polyphony.rb asks for the rest.
begin
  require_relative "#{RUBY_VERSION[/\d+\.\d+/]}/polyphony_ext"
rescue LoadError
  require_relative 'polyphony_ext'
end
